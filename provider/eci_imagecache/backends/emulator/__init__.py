"""The local backend served over HTTP as the ECI OpenAPI, for the official SDK to talk to."""
