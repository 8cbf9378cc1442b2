"""KServe V2 over gRPC: Triton's `GRPCInferenceService`, from the messages and servicer base that
`tritonclient[grpc]` ships (wire compatibility with tritonclient, perf_analyzer and DeepStream's
nvinferserver, with no .proto of our own).

- `servicer`: the service's methods over the `InferenceService` that HTTP serves too;
- `codec`: protobuf tensors to numpy and back;
- `server`: bind, serve, stop gracefully.
"""
