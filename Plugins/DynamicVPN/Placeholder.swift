// placeholder: DynamicVPN is being built
