"""Files in and out: native checkpoints, foreign formats converted at the edge, exports, atomic writes."""
