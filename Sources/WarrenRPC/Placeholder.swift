// placeholder: WarrenRPC is being built
