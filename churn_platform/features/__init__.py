"""Customer features: daily activity and rolling features, written once as SQL."""
