"""Conversion: safetensors readers, the GGUF writer, quantization."""

from gptoss_cli.convert.gguf_writer import (
    DENSE_TYPES,
    FILE_TYPE_MXFP4_MOE,
    GGUFTensor,
    dequantize,
    encode_tensor,
    expected_tensor_shapes,
    gguf_tensors_from_arrays,
    metadata_items,
    quantize_mxfp4,
    quantize_q8_0,
    tensor_nbytes,
    tensor_type_for,
    to_bf16_bits,
    write_gpt_oss_gguf,
)

__all__ = [
    "DENSE_TYPES",
    "FILE_TYPE_MXFP4_MOE",
    "GGUFTensor",
    "dequantize",
    "encode_tensor",
    "expected_tensor_shapes",
    "gguf_tensors_from_arrays",
    "metadata_items",
    "quantize_mxfp4",
    "quantize_q8_0",
    "tensor_nbytes",
    "tensor_type_for",
    "to_bf16_bits",
    "write_gpt_oss_gguf",
]
