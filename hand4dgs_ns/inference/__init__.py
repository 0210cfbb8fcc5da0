"""Feed-forward reconstruction of new videos with a trained network (``hand4dgs infer``)."""
