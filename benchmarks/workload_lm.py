"""Framework-free definition of the tiny-language-model LLC benchmark workload (numpy only).

Both sides of the slt_jax vs devinterp 2.0.1 comparison import this module, so the weights,
token data, observable data set and hyperparameters are bit-identical.

Model: a GPT-2-style decoder (pre-LayerNorm blocks, learned positional embeddings, causal
multi-head self-attention, GELU (tanh approximation, GPT-2's "gelu_new") MLP of width 4·d,
final LayerNorm, unembedding tied to the token embedding, no dropout):

    h = wte[tokens] + wpe[:T]
    for each layer:  h = h + attn(LN1(h));  h = h + mlp(LN2(h))
    logits = LN_f(h) @ wte.T

VOCAB 64, CONTEXT 16, D_MODEL 16, 2 layers, 2 heads (head dim 8): 7,872 parameters.
Weights use the x @ W convention (attn_w is (d, 3d) with q|k|v side by side, as GPT-2's Conv1D).

Data: the model is its own teacher. The N = 1,000 training sequences and the OBS_N = 100
observable sequences are sampled autoregressively (float64) from the teacher at w*, starting
from a uniformly drawn first token. So w* is the true parameter of a realizable model and
sits at the population minimum, as the LLC requires (like workload_mlp's teacher MLP).

Loss: per-token next-token cross-entropy: a sequence of T = 16 tokens gives T - 1 = 15
per-token losses (position t predicts token t + 1); L_n = mean over sequences and positions
(devinterp 2's `compute_per_token_loss`, slt_jax's `losses.next_token_cross_entropy`).

Sampler: SGLD, w <- w - (EPS/2) [NBETA grad L_B + GAMMA (w - w*)] + sqrt(EPS) xi, minibatches
of BATCH sequences, NBETA = N / log N passed explicitly to both, no burn-in, every step a draw.
The observable data set's per-token losses (OBS_N × 15) are recorded at every draw.
"""

from __future__ import annotations

import math

import numpy as np

VOCAB = 64
CONTEXT = 16  # tokens per sequence (the model's context); 15 predicted positions
D_MODEL = 16
N_LAYERS = 2
N_HEADS = 2
D_HEAD = D_MODEL // N_HEADS
D_MLP = 4 * D_MODEL
LN_EPS = 1e-5  # torch.nn.LayerNorm's default, GPT-2's layer_norm_epsilon

N = 1000  # training sequences
OBS_N = 100  # observable sequences (devinterp 2 needs batch_size * batches_per_draw of them)
BATCH = 100
GAMMA = 100.0
EPS = 3e-4  # plateaus within ~100 of 500 draws (1e-4 needs ~400; 1e-3 is biased +4%)
NBETA = N / math.log(N)  # ≈ 144.76
NUM_CHAINS = 4
DRAWS = 500
NUM_BURNIN_STEPS = 0
NUM_STEPS_BW_DRAWS = 1
SEED = 0

# Teacher weight scales: large enough that the teacher's next-token distributions are peaked
# (entropy well below log VOCAB), so the data carry structure the model must fit.
EMBED_STD = 0.6
POS_STD = 0.3
LAYER_PARAM_KEYS = ("ln1_g", "ln1_b", "attn_w", "attn_b", "proj_w", "proj_b",
                    "ln2_g", "ln2_b", "fc_w", "fc_b", "fc2_w", "fc2_b")


def param_shapes() -> dict[str, tuple[int, ...]]:
    d, m = D_MODEL, D_MLP
    shapes = {"wte": (VOCAB, d), "wpe": (CONTEXT, d)}
    per_layer = {"ln1_g": (d,), "ln1_b": (d,), "attn_w": (d, 3 * d), "attn_b": (3 * d,),
                 "proj_w": (d, d), "proj_b": (d,), "ln2_g": (d,), "ln2_b": (d,),
                 "fc_w": (d, m), "fc_b": (m,), "fc2_w": (m, d), "fc2_b": (d,)}
    for layer in range(N_LAYERS):
        for k in LAYER_PARAM_KEYS:
            shapes[f"h{layer}_{k}"] = per_layer[k]
    shapes["lnf_g"], shapes["lnf_b"] = (d,), (d,)
    return shapes


PARAM_KEYS = tuple(param_shapes())
NUM_PARAMS = sum(math.prod(s) for s in param_shapes().values())  # 7,872


def make_params(seed: int = SEED) -> dict[str, np.ndarray]:
    """Deterministic teacher weights (float32) from numpy's default_rng."""
    rng = np.random.default_rng(seed)
    d = D_MODEL
    out = {}
    for name, shape in param_shapes().items():
        k = name.split("_", 1)[1] if name.startswith("h") and name[1].isdigit() else name
        if k == "wte":
            v = EMBED_STD * rng.standard_normal(shape)
        elif k == "wpe":
            v = POS_STD * rng.standard_normal(shape)
        elif k in ("ln1_g", "ln2_g", "lnf_g"):
            v = 1.0 + 0.1 * rng.standard_normal(shape)
        elif k.endswith("_b") or k == "lnf_b":
            v = 0.05 * rng.standard_normal(shape)
        elif k == "attn_w":
            v = 1.5 * rng.standard_normal(shape) / math.sqrt(d)  # sharper attention patterns
        elif k in ("proj_w", "fc_w"):
            v = rng.standard_normal(shape) / math.sqrt(shape[0])
        elif k == "fc2_w":
            v = rng.standard_normal(shape) / math.sqrt(shape[0])
        else:  # pragma: no cover
            raise KeyError(name)
        out[name] = v.astype(np.float32)
    return out


# ---- numpy reference forward pass (float64 by default) ----

def _layer_norm(x, g, b):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + LN_EPS) * g + b


def gelu(x):
    """GPT-2's gelu_new (torch F.gelu(approximate='tanh'), jax.nn.gelu(approximate=True))."""
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def forward(params: dict[str, np.ndarray], tokens: np.ndarray, dtype=np.float64) -> np.ndarray:
    """Logits (B, T, VOCAB) for integer tokens (B, T), T <= CONTEXT."""
    p = {k: v.astype(dtype) for k, v in params.items()}
    bsz, t = tokens.shape
    h = p["wte"][tokens] + p["wpe"][:t]
    causal = np.tril(np.ones((t, t), dtype=bool))
    for layer in range(N_LAYERS):
        q = lambda k: p[f"h{layer}_{k}"]  # noqa: E731
        x = _layer_norm(h, q("ln1_g"), q("ln1_b"))
        qkv = x @ q("attn_w") + q("attn_b")  # (B, T, 3d)
        qh, kh, vh = (qkv[..., i * D_MODEL:(i + 1) * D_MODEL].reshape(bsz, t, N_HEADS, D_HEAD)
                      .transpose(0, 2, 1, 3) for i in range(3))  # (B, H, T, Dh)
        att = qh @ kh.transpose(0, 1, 3, 2) / math.sqrt(D_HEAD)
        att = np.where(causal, att, -np.inf)
        att = np.exp(att - att.max(-1, keepdims=True))
        att = att / att.sum(-1, keepdims=True)
        y = (att @ vh).transpose(0, 2, 1, 3).reshape(bsz, t, D_MODEL)
        h = h + y @ q("proj_w") + q("proj_b")
        x = _layer_norm(h, q("ln2_g"), q("ln2_b"))
        h = h + gelu(x @ q("fc_w") + q("fc_b")) @ q("fc2_w") + q("fc2_b")
    h = _layer_norm(h, p["lnf_g"], p["lnf_b"])
    return h @ p["wte"].T


def log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def per_token_loss(params, tokens, dtype=np.float64) -> np.ndarray:
    """Next-token cross-entropy (B, T-1)."""
    lp = log_softmax(forward(params, tokens, dtype))[:, :-1]
    return -np.take_along_axis(lp, tokens[:, 1:, None], axis=-1)[..., 0]


def sample_sequences(params, num: int, seed: int) -> np.ndarray:
    """`num` sequences of CONTEXT tokens sampled autoregressively from the teacher (int64)."""
    rng = np.random.default_rng(seed)
    toks = np.zeros((num, CONTEXT), dtype=np.int64)
    toks[:, 0] = rng.integers(0, VOCAB, size=num)
    for t in range(1, CONTEXT):
        logits = forward(params, toks[:, :t])[:, -1]  # causal: prefix logits are unaffected
        prob = np.exp(log_softmax(logits))
        u = rng.random((num, 1))
        toks[:, t] = np.minimum((prob.cumsum(-1) < u).sum(-1), VOCAB - 1)
    return toks


def make_workload(seed: int = SEED) -> dict:
    """{'params', 'tokens' (N, 16) int64, 'obs_tokens' (OBS_N, 16) int64, 'init_loss': L_n(w*)
    (float64 reference), 'obs_init_loss', 'teacher_entropy' (mean per-token, nats)}."""
    params = make_params(seed)
    tokens = sample_sequences(params, N, seed + 1)
    obs_tokens = sample_sequences(params, OBS_N, seed + 2)
    lp = log_softmax(forward(params, tokens))[:, :-1]
    entropy = float(-(np.exp(lp) * lp).sum(-1).mean())
    return {"params": params, "tokens": tokens, "obs_tokens": obs_tokens,
            "init_loss": float(per_token_loss(params, tokens).mean()),
            "obs_init_loss": float(per_token_loss(params, obs_tokens).mean()),
            "teacher_entropy": entropy}


def check_batch() -> np.ndarray:
    """The fixed batch both frameworks evaluate at w* to prove the models match: the first
    BATCH training sequences."""
    return make_workload()["tokens"][:BATCH]


def describe() -> dict:
    """Workload constants for result metadata."""
    return {"model": (f"GPT-2-style LM: vocab {VOCAB}, context {CONTEXT}, d_model {D_MODEL}, "
                      f"{N_LAYERS} layers, {N_HEADS} heads, MLP {D_MLP}, tied unembedding"),
            "num_params": NUM_PARAMS, "n": N, "obs_n": OBS_N, "batch": BATCH, "gamma": GAMMA,
            "eps": EPS, "nbeta": NBETA, "num_chains": NUM_CHAINS, "draws": DRAWS,
            "num_burnin_steps": NUM_BURNIN_STEPS, "num_steps_bw_draws": NUM_STEPS_BW_DRAWS,
            "loss": "per-token next-token cross-entropy (mean over sequences and 15 positions)",
            "seed": SEED}


if __name__ == "__main__":
    import time

    t = time.perf_counter()
    w = make_workload()
    assert sum(v.size for v in w["params"].values()) == NUM_PARAMS
    print(describe())
    print(f"L_n(w*) = {w['init_loss']:.6f}  obs L(w*) = {w['obs_init_loss']:.6f}  "
          f"teacher entropy = {w['teacher_entropy']:.4f} nats (uniform: {math.log(VOCAB):.4f})  "
          f"float32 L_n = {per_token_loss(w['params'], w['tokens'], np.float32).mean():.6f}  "
          f"({time.perf_counter() - t:.2f} s)")
    print("first sequences:", w["tokens"][:3].tolist())
