"""Per-row answer log-probabilities on a (data, model) mesh of 8 fake CPU devices equal the
single-device ones, in value and gradient (rows split over "data", the embedding over "model").

Runs in a subprocess: the fake devices must be configured before JAX starts.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np

_SCRIPT = textwrap.dedent(
    """
    import json
    import jax, jax.numpy as jnp, numpy as np
    from gemma_tune.training import loss, sharding

    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    hidden = jax.random.normal(keys[0], (8, 12, 64))
    embeddings = jax.random.normal(keys[1], (1024, 64)) * 0.2
    targets = jax.random.randint(keys[2], (8, 12), 0, 1024)
    weights = (np.arange(12)[None, :] >= np.arange(8)[:, None] % 5 + 3).astype(np.float32)
    cotangent = jnp.linspace(-1.0, 1.0, 8)

    def run(hidden, embeddings, batch):
        def objective(h, e):
            rows = loss.head_row_log_probs(
                h, e, batch["targets"], batch["weights"], soft_cap=30.0,
                max_targets=64, chunk_size=16, embedding_grad=True,
            )
            return jnp.sum(jnp.tanh(rows / 50.0) * cotangent), rows
        (_, rows), grads = jax.jit(
            jax.value_and_grad(objective, argnums=(0, 1), has_aux=True)
        )(hidden, embeddings)
        return [np.asarray(rows).tolist()] + [np.asarray(g).tolist() for g in grads]

    batch = {"targets": targets, "weights": weights}
    single = run(hidden, embeddings, batch)
    mesh = sharding.make_mesh(data=4, model=2)
    (placed_embeddings,) = sharding.place_weights([embeddings], mesh)
    assert len(placed_embeddings.sharding.device_set) == 8
    placed = sharding.place_batch({"hidden": hidden, **batch}, mesh)
    hidden = placed.pop("hidden")
    print(json.dumps({"single": single, "mesh": run(hidden, placed_embeddings, placed)}))
    """
)


def test_head_row_log_probs_on_a_mesh_equals_one_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
    env["JAX_PLATFORMS"] = "cpu"
    run = subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, env=env, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(run.stdout.strip().splitlines()[-1])
    for single, mesh in zip(results["single"], results["mesh"], strict=True):
        np.testing.assert_allclose(mesh, single, rtol=2e-5, atol=2e-6)
