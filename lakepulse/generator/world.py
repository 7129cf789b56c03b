"""The marketplace the generator simulates: restaurants (tenants) with menus, users and couriers."""

from __future__ import annotations

import random
from dataclasses import dataclass

COUNTRIES = {
    "DE": "EUR",
    "FR": "EUR",
    "ES": "EUR",
    "IT": "EUR",
    "NL": "EUR",
    "GB": "GBP",
    "PL": "PLN",
    "SE": "SEK",
}
CUISINES = {
    "pizza": ["Margherita", "Diavola", "Quattro Formaggi", "Funghi", "Calzone", "Tiramisu", "Garlic Bread"],
    "burgers": ["Cheeseburger", "Veggie Burger", "Double Smash", "Fries", "Onion Rings", "Milkshake"],
    "sushi": ["Salmon Nigiri", "California Roll", "Tuna Maki", "Miso Soup", "Edamame", "Mochi"],
    "indian": ["Butter Chicken", "Chana Masala", "Garlic Naan", "Samosa", "Mango Lassi", "Biryani"],
    "thai": ["Pad Thai", "Green Curry", "Tom Yum", "Spring Rolls", "Mango Sticky Rice"],
    "salads": ["Caesar Salad", "Greek Salad", "Poke Bowl", "Quinoa Bowl", "Lemonade"],
    "mexican": ["Burrito", "Tacos al Pastor", "Quesadilla", "Nachos", "Churros"],
}
DEVICES = ("ios", "android", "web")
PAGES = ("home", "search", "restaurant", "menu", "item", "cart", "checkout")


@dataclass(frozen=True, slots=True)
class MenuItem:
    """One dish of a restaurant's menu."""

    item_id: str
    name: str
    category: str
    unit_price: float


@dataclass(frozen=True, slots=True)
class Restaurant:
    """A tenant: where it is, what it sells, and how popular it is."""

    tenant_id: str
    country: str
    currency: str
    cuisine: str
    menu: tuple[MenuItem, ...]
    popularity: float


@dataclass(frozen=True, slots=True)
class User:
    """A customer of the marketplace."""

    user_id: str
    country: str
    device: str


@dataclass(frozen=True, slots=True)
class World:
    """Everything that exists before the first event."""

    restaurants: tuple[Restaurant, ...]
    users: tuple[User, ...]
    couriers: tuple[str, ...]


def build_world(rng: random.Random, tenants: int, tenant_prefix: str = "") -> World:
    """A deterministic marketplace of `tenants` restaurants, with users and couriers in proportion."""
    restaurants = []
    for number in range(1, tenants + 1):
        country = rng.choice(sorted(COUNTRIES))
        cuisine = rng.choice(sorted(CUISINES))
        tenant_id = f"{tenant_prefix}rest-{number:04d}"
        dishes = CUISINES[cuisine]
        menu = tuple(
            MenuItem(f"{tenant_id}-item-{index:02d}", name, cuisine, round(rng.uniform(3.5, 24.0), 2))
            for index, name in enumerate(dishes)
        )
        # Zipf-like popularity: a few restaurants take most orders, as on real marketplaces.
        restaurants.append(
            Restaurant(tenant_id, country, COUNTRIES[country], cuisine, menu, 1.0 / number**0.8)
        )
    users = tuple(
        User(f"user-{index:06d}", rng.choice(sorted(COUNTRIES)), rng.choices(DEVICES, (45, 40, 15))[0])
        for index in range(max(50, tenants * 150))
    )
    couriers = tuple(f"courier-{index:05d}" for index in range(max(10, tenants * 4)))
    return World(tuple(restaurants), users, couriers)
