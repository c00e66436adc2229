// placeholder: WarrenAgent is being built
