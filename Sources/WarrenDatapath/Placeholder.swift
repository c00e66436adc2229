// placeholder: WarrenDatapath is being built
