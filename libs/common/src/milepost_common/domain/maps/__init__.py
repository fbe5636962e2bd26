"""The fleet on a map: latest positions with names, a device's trips and stops of a day,
recent alerts as pins (what the admin console's map polls)."""
