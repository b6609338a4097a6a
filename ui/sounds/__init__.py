"""Voice prompt files (``<lang>/<key>.wav``) and the script that makes them."""
