"""MAX's TextTokenizer, plus the request checks MAX 25.7 leaves to the model.

new_context runs in the API process for every request, before anything
reaches the model. An InputError (a ValueError) raised here becomes an
HTTP 400 and the server goes on serving. The same problem found later,
inside the model's process, would stop that process and with it the
server: MAX's scheduler does not catch errors from the model.

MAX checks the length of a text prompt, but not of a prompt given as token
ids, nor the ids themselves, nor an empty prompt; and it answers
max_tokens 0 with one token.
"""

from __future__ import annotations

from max.interfaces import TextGenerationRequest
from max.pipelines.core import TextContext
from max.pipelines.core.exceptions import InputError
from max.pipelines.lib import TextTokenizer


class GPT2TextTokenizer(TextTokenizer):
    def __init__(self, model_path: str, **kwargs) -> None:
        super().__init__(model_path, **kwargs)
        self.vocab_size = kwargs["pipeline_config"].model_config.huggingface_config.vocab_size

    async def new_context(self, request: TextGenerationRequest) -> TextContext:
        if request.sampling_params.max_new_tokens == 0:
            raise InputError("max_tokens must be at least 1")
        context = await super().new_context(request)
        prompt = context.prompt_tokens
        if len(prompt) == 0:
            raise InputError("the prompt is empty")
        if self.max_length and len(prompt) > self.max_length:
            raise InputError(f"the prompt has {len(prompt)} tokens, more than the context length {self.max_length}")
        if prompt.min() < 0 or prompt.max() >= self.vocab_size:
            raise InputError(f"token ids must be in [0, {self.vocab_size})")
        return context
