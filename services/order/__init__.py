"""Order service: orders and the saga that settles each one (stock, then credit)."""
