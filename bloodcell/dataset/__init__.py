"""From cut cells to training data: samples, masks, scale, split, backgrounds, synth,
real tiles, synthetic slides, shards, stats."""
