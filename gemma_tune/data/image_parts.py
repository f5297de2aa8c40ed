"""Where the images of a row come from, in each format that names them.

  openai_chat  {"type": "image_url", "image_url": {"url": URL}} content parts; URL is a
               local path (relative to the data file's folder), a `file://` URL or a
               `data:image/...;base64,...` URL
  TRL          {"type": "image"} placeholders in `messages`, filled in order from the row's
               `images` column: paths, or `{"bytes", "path"}` objects as Hugging Face `Image`
               features store them (Parquet, `save_to_disk`)
  gemini       {"inlineData": {"mimeType": "image/...", "data": BASE64}} or
               {"fileData": {"mimeType": "image/...", "fileUri": PATH}} parts
  CSV          an `image` or `image_path` column holding a path (`csv_rows`)

Each becomes an `example.Image`, checked readable (`images.check`), or a problem naming the
field. `http(s)://` and `gs://` addresses are refused: nothing is downloaded while reading
or training, and the message says how to make the images local.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import urllib.parse
import urllib.request
from collections.abc import Mapping

from gemma_tune.data import example, fields, images

IMAGES_COLUMN = "images"
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]+)://")
_HTTP = (
    "an {scheme}:// URL: images are not downloaded while reading or training; download it "
    "and give its local path (relative to the data file's folder) or a data: URL"
)
_GS = (
    "a Cloud Storage URI (gs://): images are read from local files only; copy them down "
    "(gcloud storage cp -r gs://BUCKET/FOLDER .) and give their local paths"
)


def _decode_base64(text: str, field: str, what: str) -> bytes:
    """The bytes of base64 `text`; raises RowError naming `field` when it is not base64."""
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as error:
        raise example.RowError(field, f"bad base64 in {what}: {error}") from None


def _image_mime(mime: object, field: str) -> None:
    """Raises RowError unless `mime` names an image type ("image/png", ...)."""
    if not isinstance(mime, str) or not mime.lower().startswith("image/"):
        raise example.RowError(
            field, f"{mime!r} is not an image type; only image/... parts are supported"
        )


class RowImages:
    """Reads the images of one row, recording each problem in the row's checker.

    Attributes:
      source: the row, "file:line".
      folder: where relative paths are resolved (the data file's folder).
      checker: the row's problems.
      column: the row's `images` column (TRL), or None when it has none.
      placeholders: how many `{"type": "image"}` placeholders took an image from `column`.
    """

    def __init__(self, source: str, folder: str, checker: fields.Checker, column: object = None):
        self.source = source
        self.folder = folder
        self.checker = checker
        self.column = column
        self.placeholders = 0

    @classmethod
    def for_row(cls, row: Mapping, source: str, checker: fields.Checker) -> RowImages | None:
        """The image reader of a row of a local file, or None when the rows are not a local
        file's (`checker.folder` is None: a Hub dataset), whose images are then refused."""
        if checker.folder is None:
            return None
        return cls(source, checker.folder, checker, row.get(IMAGES_COLUMN))

    def _checked(self, field: str, *, path: str | None = None, data: bytes | None = None):
        """`images.check`, its RowError recorded in the checker (then None)."""
        try:
            return images.check(self.source, field, path=path, data=data)
        except example.RowError as error:
            self.checker.add(error.field, error.reason)
            return None

    def _local(self, path: str, field: str):
        """A local file, relative to the data file's folder unless absolute."""
        if not path.strip():
            self.checker.add(field, "empty path")
            return None
        return self._checked(field, path=os.path.join(self.folder, os.path.expanduser(path)))

    def url(self, url: object, field: str):
        """An OpenAI `image_url.url`: a path, `file://` or `data:` URL; None after a problem."""
        if url is None:
            self.checker.add(field, "missing (a local path or a data: URL)")
            return None
        if not isinstance(url, str):
            self.checker.add(field, f"expected a string, got {fields.type_name(url)}")
            return None
        try:
            if url.startswith("data:"):
                header, comma, payload = url[len("data:") :].partition(",")
                if not comma or not header.endswith(";base64"):
                    raise example.RowError(
                        field, "only base64 data: URLs are supported (data:image/png;base64,...)"
                    )
                _image_mime(header.removesuffix(";base64").split(";")[0], field)
                data = _decode_base64(payload, field, "the data: URL")
                return self._checked(field, data=data)
        except example.RowError as error:
            self.checker.add(error.field, error.reason)
            return None
        scheme = _SCHEME.match(url)
        if scheme and scheme.group(1).lower() == "file":
            path = urllib.request.url2pathname(urllib.parse.urlparse(url).path)
            return self._local(path, field)
        if scheme:
            name = scheme.group(1).lower()
            self.checker.add(field, _GS if name == "gs" else _HTTP.format(scheme=name))
            return None
        return self._local(url, field)

    def inline_data(self, holder: object, field: str):
        """Gemini's `inlineData` (`mimeType`, base64 `data`); None after a problem."""
        if not isinstance(holder, Mapping):
            self.checker.add(field, f"expected an object, got {fields.type_name(holder)}")
            return None
        self.checker.note_unused(holder, {"mimeType", "data"}, fields.pattern(field))
        try:
            _image_mime(holder.get("mimeType"), f"{field}.mimeType")
            data = self.checker.text(holder, "data", f"{field}.data")
            if data is None:
                return None
            return self._checked(field, data=_decode_base64(data, f"{field}.data", "data"))
        except example.RowError as error:
            self.checker.add(error.field, error.reason)
            return None

    def file_data(self, holder: object, field: str):
        """Gemini's `fileData` (`mimeType`, local `fileUri`); None after a problem."""
        if not isinstance(holder, Mapping):
            self.checker.add(field, f"expected an object, got {fields.type_name(holder)}")
            return None
        self.checker.note_unused(holder, {"mimeType", "fileUri"}, fields.pattern(field))
        try:
            _image_mime(holder.get("mimeType"), f"{field}.mimeType")
        except example.RowError as error:
            self.checker.add(error.field, error.reason)
            return None
        uri = self.checker.text(holder, "fileUri", f"{field}.fileUri")
        return None if uri is None else self.url(uri, f"{field}.fileUri")

    def placeholder(self, part: Mapping, field: str):
        """A TRL `{"type": "image"}` part: its own `image` value when it has one, else the
        next image of the row's `images` column; None after a problem."""
        if part.get("image") is not None:
            return self.column_item(part["image"], f"{field}.image")
        index = self.placeholders
        self.placeholders += 1
        if not isinstance(self.column, list) or index >= len(self.column):
            return None  # `finish` reports the count.
        return self.column_item(self.column[index], f"{IMAGES_COLUMN}[{index}]")

    def column_item(self, item: object, field: str):
        """One image of an `images` column: a path, or a `{"bytes", "path"}` object (bytes
        win when both are set, as in `datasets`); None after a problem."""
        if isinstance(item, str):
            return self._local(item, field)
        if isinstance(item, Mapping) and ({"bytes", "path"} & item.keys()):
            if item.get("bytes") is not None:
                if not isinstance(item["bytes"], bytes):
                    kind = fields.type_name(item["bytes"])
                    self.checker.add(f"{field}.bytes", f"expected bytes, got {kind}")
                    return None
                return self._checked(field, data=item["bytes"])
            if isinstance(item.get("path"), str):
                return self._local(item["path"], f"{field}.path")
        self.checker.add(
            field,
            f"expected a path or a {{'bytes', 'path'}} object, got {fields.type_name(item)}",
        )
        return None

    def finish(self) -> None:
        """Records a problem when the `images` column and the placeholders do not match."""
        if self.column is None:
            if self.placeholders:
                self.checker.add(
                    IMAGES_COLUMN,
                    f"missing: the messages have {self.placeholders} {{'type': 'image'}} "
                    "placeholder(s) and no images column fills them",
                )
            return
        if not isinstance(self.column, list):
            kind = fields.type_name(self.column)
            self.checker.add(IMAGES_COLUMN, f"expected a list of images, got {kind}")
        elif len(self.column) != self.placeholders:
            self.checker.add(
                IMAGES_COLUMN,
                f"{len(self.column)} image(s) but {self.placeholders} {{'type': 'image'}} "
                "placeholder(s) in the messages; each placeholder takes the next image",
            )
