"""Fault drills (issue 21): kill -9 each component under load, then prove nothing was lost or counted twice."""
