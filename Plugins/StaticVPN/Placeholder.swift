// placeholder: StaticVPN is being built
