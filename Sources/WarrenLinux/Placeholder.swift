// placeholder: WarrenLinux is being built
