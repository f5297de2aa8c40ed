"""Images in rows, in each format users have them: every image read into a checked
`example.Image` whose decoded pixels equal the file's, and every bad image reported with its
file, line and field, all together.

    python -m pytest -q tests/data_images_test.py
"""

import base64
import io
import json

import ml_collections
import numpy as np
import pytest
from PIL import Image

from gemma_tune.data import duplicates, example, hf, refused, sources


def pixels(seed, size=(5, 4)):
    """A random RGB image's pixels, (height, width, 3) uint8."""
    return np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)


def save_png(path, seed, size=(5, 4)):
    Image.fromarray(pixels(seed, size)).save(path)
    return pixels(seed, size)


def png_bytes(seed):
    buffer = io.BytesIO()
    Image.fromarray(pixels(seed)).save(buffer, "PNG")
    return buffer.getvalue()


def write_rows(tmp_path, rows, name="data.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def read(path, **kwargs):
    return sources.read_file(path, images=True, **kwargs)


def problems(path, **kwargs):
    with pytest.raises(example.DataError) as raised:
        read(path, **kwargs)
    return [(p.line, p.field, p.reason) for p in raised.value.problems]


def user_image(url, text="What is it?"):
    content = [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": url}}]
    return {
        "messages": [{"role": "user", "content": content}, {"role": "assistant", "content": "A"}]
    }


def trl(content, images=None):
    row = {
        "messages": [{"role": "user", "content": content}, {"role": "assistant", "content": "A"}]
    }
    return row if images is None else {**row, "images": images}


def test_openai_image_url_as_relative_path_file_url_and_data_url(tmp_path):
    (tmp_path / "img").mkdir()
    first = save_png(tmp_path / "img" / "a.png", 1)
    second = save_png(tmp_path / "b.png", 2)
    data_url = "data:image/png;base64," + base64.b64encode(png_bytes(3)).decode()
    rows = [
        user_image("img/a.png"),
        user_image((tmp_path / "b.png").as_uri()),
        user_image(data_url, text=""),
    ]
    examples = read(write_rows(tmp_path, rows)).examples
    for item, expected in zip(examples, [first, second, pixels(3)], strict=True):
        (image,) = item.images
        np.testing.assert_array_equal(image.pixels(), expected)
        assert (image.width, image.height, image.format, image.mode) == (5, 4, "PNG", "RGB")
    assert examples[0].turns[0].parts == ("What is it?", examples[0].images[0])
    assert examples[0].turns[0].text == "What is it?" and examples[0].prompt == "What is it?"
    assert examples[0].images[0].path == str(tmp_path / "img" / "a.png")
    assert examples[2].turns[0].text == "" and examples[2].images[0].data == png_bytes(3)
    assert (
        examples[0].images[0].where
        == f"{tmp_path}/data.jsonl:1:messages[0].content[1].image_url.url"
    )


def test_text_only_rows_are_unchanged(tmp_path):
    row = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}
    (item,) = read(write_rows(tmp_path, [row])).examples
    assert item.turns == (example.Turn("user", "Hi"), example.Turn("model", "Yo"))
    assert item.images == () and item.turns[0].parts == ()


def test_trl_placeholders_take_the_images_column_in_order(tmp_path):
    first, second = save_png(tmp_path / "a.png", 1), save_png(tmp_path / "b.png", 2)
    content = [{"type": "image"}, {"type": "text", "text": "Compare"}, {"type": "image"}]
    (item,) = read(
        write_rows(tmp_path, [trl(content, ["a.png", {"bytes": None, "path": "b.png"}])])
    ).examples
    assert [part if isinstance(part, str) else part.field for part in item.turns[0].parts] == [
        "images[0]",
        "Compare",
        "images[1].path",
    ]
    np.testing.assert_array_equal(item.images[0].pixels(), first)
    np.testing.assert_array_equal(item.images[1].pixels(), second)


def test_trl_rows_from_parquet_with_image_bytes(tmp_path):
    import pyarrow
    import pyarrow.parquet

    content = [{"type": "image", "text": None}, {"type": "text", "text": "What?"}]
    row = trl(content, [{"bytes": png_bytes(4), "path": "ignored.png"}])
    row["messages"][1]["content"] = [{"type": "text", "text": "A"}]  # One Arrow type per column.
    path = tmp_path / "train.parquet"
    pyarrow.parquet.write_table(pyarrow.Table.from_pylist([row, row]), path)
    examples = read(str(path)).examples
    assert len(examples) == 2
    np.testing.assert_array_equal(examples[1].images[0].pixels(), pixels(4))
    assert examples[1].images[0].source == f"{path}:2"


def test_trl_rows_from_a_saved_dataset_with_an_image_feature(tmp_path):
    import datasets

    save_png(tmp_path / "a.png", 5)
    content = [{"type": "image", "text": None}, {"type": "text", "text": "What?"}]
    features = datasets.Features(
        {
            "messages": [{"role": datasets.Value("string"), "content": [
                {"type": datasets.Value("string"), "text": datasets.Value("string")}
            ]}],
            "images": datasets.List(datasets.Image()),
        }
    )  # fmt: skip
    row = trl(content, [str(tmp_path / "a.png")])
    row["messages"][1]["content"] = [{"type": "text", "text": "A"}]
    dataset = datasets.Dataset.from_list([row], features=features)
    dataset.save_to_disk(str(tmp_path / "saved"))
    (item,) = read(str(tmp_path / "saved")).examples
    assert item.images[0].data is not None  # save_to_disk embeds the bytes
    np.testing.assert_array_equal(item.images[0].pixels(), pixels(5))


def test_gemini_inline_data_and_file_data(tmp_path):
    expected = save_png(tmp_path / "a.png", 6)
    inline = {
        "inlineData": {"mimeType": "image/png", "data": base64.b64encode(png_bytes(7)).decode()}
    }
    file_data = {"fileData": {"mimeType": "image/png", "fileUri": "a.png"}}
    row = {
        "contents": [
            {"role": "user", "parts": [{"text": "Same?"}, inline, file_data]},
            {"role": "model", "parts": [{"text": "No."}]},
        ]
    }
    (item,) = read(write_rows(tmp_path, [row])).examples
    assert item.turns[0].text == "Same?"
    np.testing.assert_array_equal(item.images[0].pixels(), pixels(7))
    np.testing.assert_array_equal(item.images[1].pixels(), expected)
    assert [image.field for image in item.images] == [
        "contents[0].parts[1].inlineData",
        "contents[0].parts[2].fileData.fileUri",
    ]


@pytest.mark.parametrize("column", ["image", "image_path"])
def test_csv_image_column(tmp_path, column):
    expected = save_png(tmp_path / "a.png", 8)
    path = tmp_path / "qa.csv"
    path.write_text(f"input,output,{column}\nWhat is it?,noise,a.png\nNo image?,none,\n")
    with_image, without = read(str(path)).examples
    assert with_image.turns[0].parts == (with_image.images[0], "What is it?")
    np.testing.assert_array_equal(with_image.images[0].pixels(), expected)
    assert with_image.images[0].field == column and without.images == ()


def test_csv_with_two_image_columns_is_refused(tmp_path):
    path = tmp_path / "qa.csv"
    path.write_text("input,output,image,image_path\na,b,x.png,y.png\n")
    assert problems(str(path)) == [
        (1, "header", "both image and image_path columns; keep one image column")
    ]


def test_other_modes_decode_to_rgb(tmp_path):
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red stays red; transparent pixels become white
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    grey = np.array([[0, 128], [255, 7]], np.uint8)
    Image.fromarray(grey, "L").save(tmp_path / "grey.png")
    Image.fromarray(pixels(9)).convert("P").save(tmp_path / "palette.png")
    jpeg = tmp_path / "photo.jpg"
    Image.fromarray(pixels(10)).save(jpeg, quality=95)
    rows = [user_image(name) for name in ("rgba.png", "grey.png", "palette.png", "photo.jpg")]
    transparent, greyscale, palette, photo = read(write_rows(tmp_path, rows)).examples
    expected_rgba = np.full((2, 2, 3), 255, np.uint8)
    expected_rgba[0, 0] = (255, 0, 0)
    np.testing.assert_array_equal(transparent.images[0].pixels(), expected_rgba)
    np.testing.assert_array_equal(greyscale.images[0].pixels(), np.stack([grey] * 3, axis=-1))
    palette_image = Image.open(tmp_path / "palette.png").convert("RGB")
    np.testing.assert_array_equal(palette.images[0].pixels(), np.asarray(palette_image))
    assert [item.images[0].mode for item in (transparent, greyscale, palette)] == ["RGBA", "L", "P"]
    assert photo.images[0].format == "JPEG" and photo.images[0].pixels().shape == (4, 5, 3)


def test_exif_orientation_turns_a_photo_upright(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to view.
    Image.fromarray(pixels(11, size=(6, 2))).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    (item,) = read(write_rows(tmp_path, [user_image("phone.jpg")])).examples
    image = item.images[0]
    assert (image.width, image.height, image.format) == (2, 6, "JPEG")
    stored = np.asarray(Image.open(tmp_path / "phone.jpg").convert("RGB"))
    np.testing.assert_array_equal(image.pixels(), np.rot90(stored, k=-1))


def test_every_bad_image_is_reported_with_line_and_field(tmp_path):
    save_png(tmp_path / "ok.png", 1)
    (tmp_path / "truncated.png").write_bytes(png_bytes(2)[:-30])
    (tmp_path / "notes.png").write_text("not an image")
    Image.fromarray(np.zeros((2, 2), np.uint16)).save(tmp_path / "deep.png")
    frames = [Image.fromarray(pixels(seed)) for seed in (1, 2)]
    frames[0].save(tmp_path / "moving.gif", save_all=True, append_images=frames[1:])
    assistant_image = trl("Hi", None)
    assistant_image["messages"][1]["content"] = [
        {"type": "image_url", "image_url": {"url": "ok.png"}}
    ]
    system_image = trl("Hi", None)
    system_image["messages"].insert(
        0, {"role": "system", "content": [{"type": "image_url", "image_url": {"url": "ok.png"}}]}
    )
    gemini = {
        "contents": [
            {
                "role": "user",
                "parts": [{"fileData": {"mimeType": "image/png", "fileUri": "gs://b/a.png"}}],
            },
            {"role": "model", "parts": [{"text": "x"}]},
        ]
    }
    pdf = {
        "contents": [
            {
                "role": "user",
                "parts": [{"inlineData": {"mimeType": "application/pdf", "data": "AAAA"}}],
            },
            {"role": "model", "parts": [{"text": "x"}]},
        ]
    }
    rows = [
        user_image("missing.png"),
        user_image("truncated.png"),
        user_image("notes.png"),
        user_image("deep.png"),
        user_image("https://example.com/a.png"),
        user_image("data:image/png;base64,@@not base64@@"),
        user_image("data:text/plain;base64,AAAA"),
        assistant_image,
        system_image,
        trl([{"type": "image"}], ["ok.png", "ok.png"]),
        trl([{"type": "image"}, {"type": "image"}]),
        trl([{"type": "text", "text": "Hi"}], ["ok.png"]),
        trl([{"type": "image"}], [{"other": 1}]),
        user_image("moving.gif"),
    ]
    path = write_rows(tmp_path, rows)
    found = problems(path)
    url = "messages[0].content[1].image_url.url"
    expected = [
        (1, url, f"no such file '{tmp_path / 'missing.png'}'"),
        (2, url, "unreadable image"),
        (3, url, "not an image Pillow can read (unknown or unsupported format)"),
        (4, url, "image mode I;16 (16-bit, 32-bit or float pixels) does not convert to RGB"),
        (5, url, "an https:// URL: images are not downloaded while reading or training"),
        (6, url, "bad base64 in the data: URL"),
        (7, url, "'text/plain' is not an image type"),
        (8, "messages[1].content", "an image in a model (assistant) turn"),
        (9, "messages[0].content", "an image in a system message"),
        (10, "images", "2 image(s) but 1 {'type': 'image'} placeholder(s)"),
        (11, "images", "missing: the messages have 2 {'type': 'image'} placeholder(s)"),
        (12, "images", "1 image(s) but 0 {'type': 'image'} placeholder(s)"),
        (13, "images[0]", "expected a path or a {'bytes', 'path'} object, got object"),
        (14, url, "an animated or multi-page image (2 frames); save the one meant as a still"),
    ]
    assert [problem[:2] for problem in found] == [problem[:2] for problem in expected]
    for (_, _, reason), (_, _, start) in zip(found, expected, strict=True):
        assert reason.startswith(start), (reason, start)
    gemini_path = write_rows(tmp_path, [gemini, pdf], "gemini.jsonl")
    assert problems(gemini_path) == [
        (1, "contents[0].parts[0].fileData.fileUri", image_parts_gs()),
        (2, "contents[0].parts[0].inlineData.mimeType",
         "'application/pdf' is not an image type; only image/... parts are supported"),
    ]  # fmt: skip


def image_parts_gs():
    from gemma_tune.data import image_parts

    return image_parts._GS


def test_training_reads_refuse_image_rows_with_their_count_and_first_row(tmp_path):
    save_png(tmp_path / "a.png", 1)
    text_row = trl("Hi")
    path = write_rows(tmp_path, [text_row, user_image("a.png"), user_image("a.png", "Again?")])
    with pytest.raises(ValueError) as raised:
        sources.load(ml_collections.ConfigDict({"source": "file", "path": path}))
    assert str(raised.value).startswith(
        f"image rows: this model does not read images (which models do: "
        f"docs/vision.md); 2 rows have images, first at {path}:2"
    )


def test_an_image_moved_after_reading_is_named_when_decoded(tmp_path):
    save_png(tmp_path / "a.png", 1)
    (item,) = read(write_rows(tmp_path, [user_image("a.png")])).examples
    (tmp_path / "a.png").unlink()
    with pytest.raises(
        ValueError, match=r"data.jsonl:1:messages\[0\].content\[1\].image_url.url: no such"
    ):
        item.images[0].pixels()


def test_duplicates_tell_images_apart(tmp_path):
    save_png(tmp_path / "a.png", 1)
    save_png(tmp_path / "b.png", 2)
    rows = [user_image("a.png"), user_image("b.png"), user_image("a.png")]
    examples = read(write_rows(tmp_path, rows)).examples
    kept, removed = duplicates.deduplicate(examples, "exact")
    assert removed == 1 and [item.images[0].path for item in kept] == [
        str(tmp_path / "a.png"),
        str(tmp_path / "b.png"),
    ]


def test_images_outside_a_local_file_stay_refused(tmp_path):
    """A Hub dataset's rows have no folder for paths; preference pairs and single `image`
    keys are not read as images: all are refused by name, never read as text."""
    with pytest.raises(ValueError, match="images are not supported here"):
        hf.load_hf("hub/vision", rows=[trl([{"type": "image"}], ["a.png"])])
    result = hf.load_hf("hub/vision", rows=[user_image("a.png")])
    assert result.examples == [] and "images are not supported here" in next(iter(result.dropped))
    single = write_rows(tmp_path, [{"image": "a.png", "prompt": "a", "completion": "b"}])
    assert problems(single) == [(1, "image", refused.IMAGES)]
    beside_prompt = write_rows(tmp_path, [{"images": ["a.png"], "prompt": "a", "completion": "b"}])
    assert problems(beside_prompt) == [(1, "images", refused.IMAGES)]
