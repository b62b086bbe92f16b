# The engine's own Mojo package (not a lesson): tools/kv_engine.py hands it
# to the decode graph. The op is in decode_attention.mojo.
