// placeholder: Vici is being built
