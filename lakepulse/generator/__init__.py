"""Realistic marketplace load: restaurants, users, couriers and order lifecycles, with messy delivery."""
