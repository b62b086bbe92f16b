"""The judge's catalogue for lesson 14 (the KV cache), in the form of
tests/catalogue.py (which adds these to VARIANTS)."""

from tests.catalogue import KEYS, LIMIT, ONE_RNG, TO_CHOOSER, VALUES, mistake

LESSON_14_MISTAKES = [
    mistake(14, "positions-not-offset", "positions are not offset",
            ("past_length, past_length + seq_length, dtype=input_ids.dtype", "0, seq_length, dtype=input_ids.dtype")),
    mistake(14, "mask-not-offset", "the mask covers the new tokens only", ("causal_mask(seq_length, past_length,", "causal_mask(seq_length, 0,")),
    mistake(14, "own-key-and-value-left-out", "the new tokens' own keys and values are left out",
            ("all_keys = F.concat([past_key, key], axis=2)", "all_keys = past_key"), ("all_values = F.concat([past_value, value], axis=2)", "all_values = past_value")),
    mistake(14, "keys-and-values-swapped", "keys and values are swapped",
            ("        return output, key, value\n\n\nclass CachedGPT2Block", "        return output, value, key\n\n\nclass CachedGPT2Block")),
    mistake(14, "returns-all-keys", "returns all keys and values, cached and new",
            ("        return output, key, value\n\n\nclass CachedGPT2Block", "        return output, all_keys, all_values\n\n\nclass CachedGPT2Block")),
    mistake(14, "no-scaling", "the scores are not scaled", (" / math.sqrt(self.head_dim)  # [batch", "  # [batch")),
    mistake(14, "new-keys-first", "go before the cached ones", ("[past_key, key], axis=2", "[key, past_key], axis=2"), ("[past_value, value]", "[value, past_value]")),
    mistake(14, "every-layer-reads-layer-0", "every layer reads layer 0's cache", ("past_keys[i], past_values[i]", "past_keys[0], past_values[0]")),
    mistake(14, "head-on-every-position", "the LM head runs on every new position", ("self.lm_head(hidden_states[:, -1, :])", "self.lm_head(hidden_states)")),
    mistake(14, "head-on-first-position", "the LM head reads the first new position", ("lm_head(hidden_states[:, -1, :])", "lm_head(hidden_states[:, 0, :])")),
    mistake(14, "values-in-the-keys-buffer", "keys are stored where values belong",
            (KEYS, KEYS.replace("= keys", "= values")), (VALUES, VALUES.replace("= values", "= keys"))),
    mistake(14, "cache-length-not-advanced", "the length is never advanced", ("        self.length += seq_length\n", "")),
    mistake(14, "cache-length-set", "the length is set to the new tokens' count", ("self.length += seq_length", "self.length = seq_length")),
    mistake(14, "append-concatenates", "np.concatenate makes a new, longer array", (KEYS, "self.keys = np.concatenate([self.keys, keys], axis=3)")),
    mistake(14, "append-replaces-the-buffer", "replaces the buffer with the new tokens", (KEYS, "self.keys = keys")),
    mistake(14, "append-on-the-heads-axis", "the slice written does not have the new keys' shape", (KEYS, KEYS.replace(":, :, :, ", ":, :, "))),
    mistake(14, "append-at-the-start", "the new tokens overwrite positions 0", (KEYS, "self.keys[:, :, :, :seq_length] = keys"),
            (VALUES, "self.values[:, :, :, :seq_length] = values")),
    mistake(14, "one-buffer-for-both", "keys and values are one buffer", ("self.values = np.zeros(shape, dtype=np.float32)", "self.values = self.keys")),
    mistake(14, "cache-appended-twice", "cache.append is called more than once per step",
            ("        cache.append(keys, values)\n", "        cache.append(keys, values)\n        cache.append(keys, values)\n")),
    mistake(14, "whole-sequence-fed-again", "the whole sequence is fed again", ("        new_ids = next_token[:, None]", "        new_ids = ids")),
    mistake(14, "decode-ids-flat", "feed the token just chosen as a column", ("new_ids = next_token[:, None]", "new_ids = next_token")),
    mistake(14, "cache-too-small", "the cache has no room for every token", ("capacity=prompt_length + max_new_tokens)", "capacity=prompt_length)")),
    mistake(14, "logits-indexed-again", "returns the last position's logits only", ("choose_next_token(logits,", "choose_next_token(logits[:, -1, :],")),
    mistake(14, "new-generator-every-step", "a new np.random.default_rng(seed) at every step", ONE_RNG),
    mistake(14, "top-p-not-passed-on", "does not pass its top_p on to choose_next_token", TO_CHOOSER),
    mistake(14, "stops-when-one-is-finished", "stops as soon as one sequence is finished", ("if finished.all():", "if finished.any():")),
    mistake(14, "refuses-exactly-n-positions", "(>, not >=)", (LIMIT, LIMIT.replace(">", ">="))),
    mistake(14, "length-not-checked", "the model ran, although", (LIMIT, "if False:")),
    mistake(14, "new-tokens-not-counted", "the new tokens are not counted", (LIMIT, LIMIT.replace(" + max_new_tokens", ""))),
]

