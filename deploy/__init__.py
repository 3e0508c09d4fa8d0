"""The example's deployment: what it tells the runtime's generators (`project`), its images, its
local CA and `make compose-env`."""
