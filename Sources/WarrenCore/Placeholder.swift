// placeholder: WarrenCore is being built
