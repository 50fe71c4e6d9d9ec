"""Find the global minimum of a bumpy two-dimensional function by search."""

import numpy as np


# EVOLVE-BLOCK-START
def search_algorithm(iterations=400, bounds=(-5.0, 5.0)):
    """Plain random search: sample points uniformly, keep the lowest one seen."""
    best_x = np.random.uniform(bounds[0], bounds[1])
    best_y = np.random.uniform(bounds[0], bounds[1])
    best_value = evaluate_function(best_x, best_y)
    for _ in range(iterations):
        x = np.random.uniform(bounds[0], bounds[1])
        y = np.random.uniform(bounds[0], bounds[1])
        value = evaluate_function(x, y)
        if value < best_value:
            best_x, best_y, best_value = x, y, value
    return best_x, best_y, best_value


# EVOLVE-BLOCK-END


def evaluate_function(x, y):
    """Many local minima; the global one is near (-1.704, 0.678) with value about -1.519."""
    return np.sin(x) * np.cos(y) + np.sin(x * y) + (x**2 + y**2) / 20


def run_search():
    x, y, value = search_algorithm()
    return x, y, value
