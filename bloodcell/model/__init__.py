"""The network (ModifiedYolo), decoding + NMS and the compiled inference path that train, evaluate
and detect use."""
