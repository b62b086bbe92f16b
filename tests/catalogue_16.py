"""The judge's catalogue for lesson 16 (the Mojo kernel), in the form of
tests/catalogue.py (which adds these to VARIANTS). Most edits are in the
kernel, solutions/kernels_16/matvec.mojo (file=MOJO); each mistake must
fail with its hint, and correct code written another way must pass."""

from tests.catalogue import Variant, correct, mistake

MOJO = "kernels_16/matvec.mojo"


def mojo_mistake(name, expect, *edits):
    return Variant(16, name, tuple(edits), expect, file=MOJO)


def mojo_correct(name, *edits):
    return Variant(16, name, tuple(edits), None, file=MOJO)


LESSON_16 = [
    # the kernel
    mojo_mistake("k-tail-dropped", "the last K % WIDTH inputs",
                 ("            for j in range(k, K):  # the last K % WIDTH inputs, one at a time\n"
                  "                total += x[t * K + j] * w[r * K + j]\n", "")),
    mojo_mistake("n-tail-dropped", "the last rows of W",
                 ("        for n in range(blocks * ROWS, N):\n            for m in range(M):\n"
                  "                dot_rows[1, 1](xp + m * K, wp + n * K, op + m * N + n, K, N)\n", "")),
    mojo_mistake("block-index-as-row", "read from W's row b",
                 ("dot_rows[TOKENS, ROWS](xp + m * K, wp + n * K,", "dot_rows[TOKENS, ROWS](xp + m * K, wp + b * K,"),
                 ("dot_rows[1, ROWS](xp + t * K, wp + n * K,", "dot_rows[1, ROWS](xp + t * K, wp + b * K,")),
    mojo_mistake("one-total-per-block", "one running total is shared by the rows of a block",
                 ("        @parameter\n        for r in range(rows):\n            var total = acc[t * rows + r].reduce_add()",
                  "        var total: Float32 = 0\n\n        @parameter\n        for r in range(rows):\n"
                  "            total += acc[t * rows + r].reduce_add()")),
    mojo_mistake("blocks-per-worker-rounded-down", "some blocks of rows of W are never computed",
                 ("var per_worker = (blocks + workers - 1) // workers", "var per_worker = blocks // workers")),
    mojo_mistake("first-token-only", "only the first token is computed",
                 ("                while m + TOKENS <= M:", "                while m + TOKENS <= min(M, 1):"),
                 ("                for t in range(m, M):", "                for t in range(m, min(M, 1)):")),
    mojo_mistake("token-tail-dropped", "the last M % TOKENS tokens",
                 ("                for t in range(m, M):  # the last M % TOKENS tokens, one at a time\n"
                  "                    dot_rows[1, ROWS](xp + t * K, wp + n * K, op + t * N + n, K, N)\n", "")),
    mojo_mistake("every-token-reads-the-first", "every token of a pass reads the x of the pass's first token",
                 ("            xs[t] = x.load[width=WIDTH](t * K + k)", "            xs[t] = x.load[width=WIDTH](k)")),
    mojo_mistake("compile-error", "matvec.mojo:",
                 ("            var total = acc[t * rows + r].reduce_add()",
                  "            var total = acc[t * rows + r].reduce_add() + \"0\"")),
    # the Python side
    mistake(16, "bias-not-added", "the bias is not added",
            ("        if self.bias is not None:\n            y = y + self.bias\n", "")),
    mistake(16, "kernel-never-called", "KernelLinear never calls matvec",
            ("        if not one_token_per_row(x):", "        if True:")),
    mistake(16, "use-kernel-on-children-only", "use_kernel does not reach every Linear",
            ("    for _, layer in model.descendants:", "    for _, layer in model.children:")),
    # correct code written another way
    mojo_correct("blocks-dealt-round-robin",
                 ("            for b in range(first, last):", "            for b in range(worker, blocks, workers):")),
    mojo_correct("one-token-per-pass", ("alias TOKENS = 4", "alias TOKENS = 1")),
    correct(16, "rows-by-flatten", ("rows = x.reshape([x.shape[0], x.shape[-1]])", "rows = F.flatten(x, 0, -2)")),
]
