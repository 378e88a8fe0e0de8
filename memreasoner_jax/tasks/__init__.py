"""Task generators, file formats and metrics (bAbI, variable tracking, haystacks)."""
