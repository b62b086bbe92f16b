"""The course's GPT-2 as a model that `max serve` can serve.

    max serve --custom-architectures serve/gpt2_arch --model-path FOLDER --devices cpu ...

(serve.py at the top of the repository runs that for you.) MAX appends
serve/ to sys.path, imports this package and registers every entry of
ARCHITECTURES. When a checkpoint's config.json lists "GPT2LMHeadModel" in
its "architectures", MAX serves it with the classes named here:

- tokenizer.py: GPT2TextTokenizer, which turns a request into token ids
  (MAX's TextTokenizer, plus checks that keep bad requests away from the model);
- model.py: GPT2PipelineModel, which MAX asks for the next token's logits of
  a batch of requests;
- runner.py: the cache of lesson 15, one slot per request, one model call per step;
- loader.py: building lesson 15's BatchedGPT2LMHeadModel from the checkpoint
  (the solutions', or with serve.py --steps the learner's) and compiling it.
"""

from max.graph.weights import WeightsFormat
from max.interfaces import PipelineTask
from max.nn.kv_cache import KVCacheStrategy
from max.pipelines.lib import SupportedArchitecture, SupportedEncoding

from .model import GPT2PipelineModel
from .tokenizer import GPT2TextTokenizer

gpt2 = SupportedArchitecture(
    name="GPT2LMHeadModel",  # matched against config.json's "architectures"
    example_repo_ids=["openai-community/gpt2", "gpt2"],
    task=PipelineTask.TEXT_GENERATION,
    # float32 on the CPU; MAX's bfloat16 would need a GPU.
    default_encoding=SupportedEncoding.float32,
    supported_encodings={SupportedEncoding.float32: [KVCacheStrategy.PAGED]},
    pipeline_model=GPT2PipelineModel,
    tokenizer=GPT2TextTokenizer,
    default_weights_format=WeightsFormat.safetensors,
    # MAX's prefix cache lives in MAX's own paged KV cache, which this model
    # does not use (it keeps lesson 15's cache instead).
    required_arguments={"enable_prefix_caching": False},
)

ARCHITECTURES = [gpt2]
