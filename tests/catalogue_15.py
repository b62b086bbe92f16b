"""The judge's catalogue for lesson 15 (many sequences at once), in the form
of tests/catalogue.py (which adds these to VARIANTS): mistakes a learner
makes with the per-row cache, the mask from the lengths, the positions and
the loop, each of which must fail with its hint, and correct code written
another way, which must pass."""

from tests.catalogue import correct, mistake

POSITIONS = "positions = F.unsqueeze(lengths, 1) + F.unsqueeze(steps, 0)"

LESSON_15 = [
    # the cache
    mistake(15, "row-written-to-slot-i", "row i is written to slot i",
            ("self.keys[:, slot, :, start : start + seq_length] = keys[:, i]",
             "self.keys[:, i, :, start : start + seq_length] = keys[:, i]"),
            ("self.values[:, slot, :, start : start + seq_length] = values[:, i]",
             "self.values[:, i, :, start : start + seq_length] = values[:, i]")),
    mistake(15, "every-length-advanced", "every slot's length is advanced",
            ("            self.lengths[slot] += seq_length", "            self.lengths += seq_length")),
    mistake(15, "free-keeps-the-length", "a freed slot is empty",
            ("self.in_use[slot], self.lengths[slot] = False, 0", "self.in_use[slot] = False")),
    # the mask
    mistake(15, "mask-ignores-the-lengths", "the lengths are not used",
            ("padding = F.where(unfilled, blocked, allowed)", "padding = F.where(unfilled, allowed, allowed)")),
    mistake(15, "padding-hides-the-new-tokens", "the padding mask also hides the new tokens",
            (" & (F.unsqueeze(keys, 0) < past_length)", "")),
    # the model
    mistake(15, "positions-from-the-longest-row", "every row's positions start at the longest row's length",
            ("steps = Tensor.arange(seq_length, dtype", "steps = Tensor.arange(past_length, past_length + seq_length, dtype"),
            (POSITIONS, "positions = F.unsqueeze(steps, 0)")),
    mistake(15, "positions-from-zero", "the positions start at 0", (POSITIONS, "positions = F.unsqueeze(steps, 0)")),
    mistake(15, "mask-not-passed-to-the-blocks", "the mask ignores the lengths",
            ("block(hidden_states, past_keys[i], past_values[i], mask)", "block(hidden_states, past_keys[i], past_values[i])")),
    mistake(15, "head-on-every-position", "has shape",
            ("logits = self.lm_head(hidden_states[:, -1, :])", "logits = self.lm_head(hidden_states)")),
    # the loop
    mistake(15, "one-generator-for-all-prompts", "each prompt its own generator",
            ("rngs = [np.random.default_rng(None if seed is None else seed + i) for i in range(len(prompts))]",
             "rngs = [np.random.default_rng(seed)] * len(prompts)")),
    mistake(15, "end-of-text-ignored", "a row that writes eos_token_id goes on",
            ("if token == eos_token_id or made[index] == max_new_tokens:", "if made[index] == max_new_tokens:")),
    # correct code written another way
    correct(15, "positions-by-reshape",
            (POSITIONS, "positions = lengths.reshape([lengths.shape[0], 1]) + steps")),
    correct(15, "unfilled-with-logical-and",
            ("unfilled = (F.unsqueeze(keys, 0) >= F.unsqueeze(lengths, 1)) & (F.unsqueeze(keys, 0) < past_length)",
             "unfilled = F.logical_and(F.unsqueeze(keys, 0) >= F.unsqueeze(lengths, 1), F.unsqueeze(keys, 0) < past_length)")),
    correct(15, "decode-rows-in-any-order", ("rows = sorted(chosen)", "rows = list(chosen)[::-1]")),
]
