"""Weight-only quantization: round-to-nearest (``rtn``) and GPTQ (``gptq``) make the quantized
state; ``layers`` are the runtime modules; ``io`` saves and loads quantized directories."""

from tigerdecode.quant.rtn import quantize_model, quantized_bytes

__all__ = ["quantize_model", "quantized_bytes"]
