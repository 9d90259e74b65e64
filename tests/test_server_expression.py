"""The render route's ``expression`` against a real ``likeness serve`` process (no mocks), serving the session's
draft bundle: absent or null renders the field as fitted (the photo's own expression); ``{}`` is the neutral face,
which differs from it when the photo is not neutral; the photo's weights reproduce the fitted render; an unknown
name is refused before anything is queued."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image
from test_server_harness import ServerProcess, photo_camera, workspace_with

pytestmark = pytest.mark.slow  # a real server process / build (make quick skips it)

AVATAR_ID = "ab" * 16


@pytest.fixture(scope="module")
def served(tmp_path_factory, bundle_dir):
    ws = workspace_with(tmp_path_factory.mktemp("expr") / "ws", bundle_dir, AVATAR_ID)
    srv = ServerProcess(ws)
    srv.start()
    yield srv
    srv.stop()


def _rgba(r) -> np.ndarray:
    assert r.status_code == 200 and r.headers["content-type"] == "image/png", r.text
    return np.asarray(Image.open(io.BytesIO(r.content)), np.int16)


def test_empty_expression_is_neutral_and_absent_is_the_photo(served, bundle_dir):
    photo = json.loads((bundle_dir / "expression.json").read_text())["photo_weights"]
    assert max(photo.values()) > 0.2, "the demo portrait smiles: its photo expression is not neutral"
    with served.client(timeout=600.0) as c:
        manifest = c.get(f"/v1/avatars/{AVATAR_ID}").json()
        cam = photo_camera(manifest, 96)
        url = f"/v1/avatars/{AVATAR_ID}/render"
        absent = _rgba(c.post(url, json=cam))
        null = _rgba(c.post(url, json={**cam, "expression": None}))
        neutral = _rgba(c.post(url, json={**cam, "expression": {}}))
        as_photo = _rgba(c.post(url, json={**cam, "expression": photo}))
        bad = c.post(url, json={**cam, "expression": {"jawOpn": 0.5}})
    np.testing.assert_array_equal(null, absent)
    assert (absent[..., 3] > 128).mean() > 0.3, "the face should fill the frame"
    diff = np.abs(neutral - absent)[..., :3].max(-1)
    print(f"neutral vs photo expression: {(diff > 8).mean():.1%} of pixels differ by more than 8/255")
    assert (diff > 8).mean() > 0.01, "{} must render the neutral face, not the photo's expression"
    assert np.abs(as_photo - absent).max() <= 1, "the photo's weights reproduce the fitted field"
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "bad_expression", bad.text
    assert "jawOpn" in bad.json()["error"]["message"]
