"""asgn3: recurrent networks for image captioning and image gradients of a pretrained CNN, in numpy."""
