"""Images in: input contracts, reading files (formats, limits, orientation), the VSE++
transform, and which paths and URLs a served encoder may read."""
