"""Fitting methods: how a radiance field is made to agree with the one photo."""
