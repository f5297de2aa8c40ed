"""Talk to a base or tuned Gemma: `python -m gemma_tune.sample`.

    python -m gemma_tune.sample --run=RUN_DIR --prompt="When does the makerspace open?"
    python -m gemma_tune.sample --run=RUN_DIR --compare_base          # interactive, side by side
    python -m gemma_tune.sample --model=gemma3_270m_gguf --prompt="The capital of France is"
    python -m gemma_tune.sample --model=gemma3_270m_gguf --adapter=RUN_DIR/adapter --temperature=0.7
    python -m gemma_tune.sample --run=RUN_DIR --image=chart.png --prompt="Which bar is tallest?"

Prompts are wrapped in Gemma's chat template (`--raw` sends them as they are), generation stops
at `<end_of_turn>` or `<eos>`, and tokens are printed as they are generated. `--temperature=0`
(the default) is greedy and deterministic; otherwise `--top_k`, `--top_p` and `--seed` shape
the sampling. Without `--prompt`, it reads prompts interactively until an empty line or EOF.
`--image=PATH` (repeatable) puts images before the prompt, in order, for a model with a vision
encoder (`tiny:gemma3_vision`, `tiny:gemma4_vision`, docs/vision.md); they go with every prompt
of the session.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging

import gemma_tune  # noqa: F401  (selects the JAX backend)
from gemma_tune import command_line, console

FLAGS = flags.FLAGS
flags.DEFINE_string("run", None, "A run directory: its model and adapter are loaded.")
flags.DEFINE_string("model", None, "A preset name, preset directory, .gguf or tiny:ARCH.")
flags.DEFINE_string("adapter", None, "An adapter directory (with adapter.json) to apply.")
flags.DEFINE_string("prompt", None, "The user message; without it, prompts are read from stdin.")
flags.DEFINE_string("system", None, "An optional system prompt (folded into the user turn).")
flags.DEFINE_string("context", None, "An optional passage placed before the question.")
flags.DEFINE_bool("raw", False, "Send the prompt as is, without the chat template.")
flags.DEFINE_bool("compare_base", False, "Also answer with the base model, side by side.")
flags.DEFINE_integer("max_new_tokens", 128, "The most tokens to generate.")
flags.DEFINE_float("temperature", 0.0, "0 is greedy (deterministic); higher samples.")
flags.DEFINE_integer("top_k", 0, "Sample among the k most likely tokens (0: all).")
flags.DEFINE_float("top_p", 1.0, "Sample among the most likely tokens up to this mass.")
flags.DEFINE_integer("seed", 0, "Sampling seed.")
flags.DEFINE_string("dtype", None, "float32, bfloat16 or auto (default: the run's, else auto).")
flags.DEFINE_string(
    "decode_dtype", "float32", "float32, or bfloat16 weight matrices for decoding (faster)."
)
flags.DEFINE_multi_string("image", [], "An image file placed before the prompt (repeatable).")


def _resolve(run: str | None, model_name: str | None, adapter: str | None):
    """Returns `(preset, adapter_dir, seed, dtype)` from --run or --model/--adapter, the run's
    files and the adapter checked before any model loads.

    Raises:
      FileNotFoundError / ValueError: a missing, unfinished or damaged run or adapter, named.
    """
    from gemma_tune.runs import integrity, run_dir

    if run:
        config = run_dir.read_config(run)
        adapter_dir = adapter or _run_adapter(run)
        integrity.check_adapter(adapter_dir)
        preset = model_name or config["model"]["preset"]
        return preset, adapter_dir, config.get("seed", 0), config["model"]["dtype"]
    if not model_name:
        raise app.UsageError("give --run=RUN_DIR or --model=PRESET")
    if adapter:
        integrity.check_adapter(adapter)
    return model_name, adapter, 0, "auto"


def _run_adapter(run: str) -> str:
    """The run's adapter directory; FileNotFoundError when the run has not written it."""
    from gemma_tune.runs import run_dir

    path = run_dir.adapter_dir(run)
    if not os.path.exists(os.path.join(path, run_dir.ADAPTER_METADATA)):
        raise FileNotFoundError(f"{run} has no adapter yet (did the run finish?)")
    return path


class Chat:
    """A loaded model (and optional adapter) that streams answers to prompts."""

    def __init__(
        self,
        preset: str,
        adapter_dir: str | None,
        seed: int = 0,
        dtype: str = "auto",
        decode_dtype: str = "float32",
    ):
        from gemma_tune import model
        from gemma_tune.evaluation import generate
        from gemma_tune.model import adapters, vision
        from gemma_tune.runs import tuned_run
        from gemma_tune.training import template

        if adapter_dir:
            self.loaded = tuned_run.load_base(preset, adapter_dir, dtype, seed=seed)
        else:
            self.loaded = model.load(preset, dtype, seed=seed)
        self.template = template.ChatTemplate(
            self.loaded.tokenizer, image_inputs=vision.image_inputs(self.loaded)
        )
        # The weights as loaded; the stream casts them for decoding (`--decode_dtype`).
        self.tuned_weights = None
        self.stream = generate.TokenStream(self.loaded.causal_lm, decode_dtype=decode_dtype)
        self.base_weights = self.stream.decoder.model_weights()  # LoRA factors B are zero
        if adapter_dir:
            adapters.load(self.loaded.causal_lm, adapter_dir, self.loaded.base_fingerprint)
            self.tuned_weights = self.stream.decoder.model_weights()

    @property
    def decode_dtype(self) -> str:
        """The dtype of the weight matrices the answers are decoded with."""
        return self.stream.decoder.decode_dtype

    def set_decode_dtype(self, decode_dtype: str) -> None:
        """Decodes from now on with `decode_dtype` weight matrices (`generate.DECODE_DTYPES`),
        the model staying loaded.

        Raises:
          ValueError: an unknown `decode_dtype`, named.
        """
        from gemma_tune.evaluation import generate

        if decode_dtype != self.decode_dtype:
            self.stream = generate.TokenStream(self.loaded.causal_lm, decode_dtype=decode_dtype)

    def prompt_ids(self, text: str, system=None, context=None, raw=False, images=()):
        """Token ids for a user message (chat-templated unless `raw`) and the placed images
        (`vision.PlacedImage`s) of `images`, `data.example.Image`s put before the text."""
        from gemma_tune.data import example

        if raw:
            if images:
                raise ValueError("--image needs the chat template; leave out --raw")
            return [self.template.bos_id] + self.template._encoder.encode(text), ()
        parts = (*images, text) if images else ()
        turns = (example.Turn(example.USER, text, parts=parts), example.Turn(example.MODEL, "-"))
        item = example.Example(turns=turns, system=system, context=context)
        return self.template.encode_prompt(item), self.template.prompt_images(item)

    def answer(self, prompt, weights, echo=True, **sampling) -> str:
        """Generates an answer to `prompt` (`prompt_ids`' ids and placed images), printing each
        piece of text as soon as it is decoded."""
        prompt_ids, placed = prompt
        ids: list[int] = []
        shown = ""
        for token_id in self.stream.stream(
            prompt_ids,
            stop_token_ids=self.template.stop_token_ids,
            weights=weights,
            images=placed,
            **sampling,
        ):
            ids.append(token_id)
            text = self.template.decode(ids)
            if echo:
                sys.stdout.write(text[len(shown) :])
                sys.stdout.flush()
            shown = text
        if echo:
            sys.stdout.write("\n")
        return shown


def read_images(paths: list[str]) -> tuple:
    """The `--image` files, opened and checked (`data.images.check`).

    Raises:
      ValueError: naming the flag and the file that cannot be read as an image.
    """
    from gemma_tune.data import images

    return tuple(images.check("--image", f"--image={path}", path=path) for path in paths)


def _respond(chat: Chat, text: str, images: tuple = ()) -> None:
    """Answers one prompt with the tuned model (or the base), or both with --compare_base."""
    prompt_ids = chat.prompt_ids(text, FLAGS.system, FLAGS.context, FLAGS.raw, images)
    sampling = dict(
        max_new_tokens=FLAGS.max_new_tokens,
        temperature=FLAGS.temperature,
        top_k=FLAGS.top_k,
        top_p=FLAGS.top_p,
        seed=FLAGS.seed,
    )
    tuned = chat.tuned_weights
    if FLAGS.compare_base and tuned is not None:
        print("--- base ---", flush=True)
        chat.answer(prompt_ids, chat.base_weights, **sampling)
        print("--- tuned ---", flush=True)
        chat.answer(prompt_ids, tuned, **sampling)
    else:
        chat.answer(prompt_ids, tuned if tuned is not None else chat.base_weights, **sampling)


def main(argv) -> None:
    """Loads the model from the flags and answers `--prompt`, or each line of stdin. Only the
    answers go to stdout; loading messages go to stderr.

    Raises:
      FileNotFoundError / ValueError: a missing or damaged run or adapter (`command_line`
        prints it as one line).
    """
    del argv
    logging.set_verbosity(logging.WARNING)
    preset, adapter_dir, seed, dtype = _resolve(FLAGS.run, FLAGS.model, FLAGS.adapter)
    if FLAGS.compare_base and not adapter_dir:
        raise app.UsageError("--compare_base needs a tuned model: give --run or --adapter")
    if FLAGS.image and FLAGS.raw:
        raise app.UsageError("--image needs the chat template; leave out --raw")
    images = read_images(FLAGS.image)
    command_line.import_keras_hub_quietly()
    from gemma_tune.evaluation import generate

    generate.check_decode_dtype(FLAGS.decode_dtype, "--decode_dtype")
    with console.status_to_stderr():
        chat = Chat(preset, adapter_dir, seed, FLAGS.dtype or dtype, FLAGS.decode_dtype)
    if images and chat.template.image_inputs is None:
        raise ValueError(f"--image: {preset} does not read images (docs/vision.md)")
    if FLAGS.prompt is not None:
        _respond(chat, FLAGS.prompt, images)
        return
    print("Type a prompt and press Enter (empty line or Ctrl-D to quit).", file=sys.stderr)
    for line in sys.stdin:
        if not line.strip():
            break
        _respond(chat, line.strip(), images)
        print("> ", end="", flush=True)


if __name__ == "__main__":
    command_line.run(main)
