// placeholder: IPsec is being built
