"""A local stand-in for the Hugging Face Hub's upload API, for push tests without a network.

It answers the calls `huggingface_hub.HfApi.create_repo` and `upload_folder` make (create
the repository, check a model card's YAML header, ask how to upload each file, commit them)
and keeps what it was sent: `repos[repo_id]` holds `private` and `files` (path -> bytes). Every
file is uploaded "regular" (inline in the commit), so no LFS or Xet storage is involved.
"""

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeHub:
    """Serves on 127.0.0.1 at `url` until `close()`."""

    def __init__(self):
        self.repos: dict[str, dict] = {}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _handler(hub: FakeHub):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _reply(self, code, payload):
            body = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            self._reply(404, {"error": f"not served: {self.path}"})

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path == "/api/repos/create":
                request = json.loads(body)
                repo = "/".join(filter(None, (request.get("organization"), request["name"])))
                private = request.get("private", request.get("visibility") == "private")
                hub.repos.setdefault(repo, {"private": private, "files": {}})
                return self._reply(200, {"url": f"{hub.url}/{repo}"})
            if self.path == "/api/validate-yaml":
                import yaml

                try:
                    yaml.safe_load(json.loads(body)["content"].split("---")[1])
                except (yaml.YAMLError, IndexError) as error:
                    return self._reply(400, {"error": f"invalid model card YAML: {error}"})
                return self._reply(200, {"errors": [], "warnings": []})
            if "/preupload/" in self.path:
                files = [
                    {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                    for f in json.loads(body)["files"]
                ]
                return self._reply(200, {"files": files})
            if "/commit/" in self.path:
                repo = self.path.split("/api/models/")[1].split("/commit/")[0]
                for line in body.decode().splitlines():
                    item = json.loads(line)
                    if item["key"] == "file":
                        value = item["value"]
                        hub.repos[repo]["files"][value["path"]] = base64.b64decode(value["content"])
                return self._reply(
                    200, {"commitUrl": f"{hub.url}/{repo}/commit/1", "commitOid": "1" * 40}
                )
            return self._reply(404, {"error": f"not served: {self.path}"})

    return Handler
