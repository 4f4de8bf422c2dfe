"""Models built from the layers in asgn3: the captioning RNN and the pretrained CNN."""
