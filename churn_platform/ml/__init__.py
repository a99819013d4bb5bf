"""Labels, training sets, the churn model and daily churn scores."""
