"""mlstack's model server: Open Inference Protocol v2 over REST on onnxruntime."""
