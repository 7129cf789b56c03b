"""The metrics API's routers, one module per resource: they parse, authorise and call the query modules."""
