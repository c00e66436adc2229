// placeholder: Example is being built
