"""Finding products in photos: detectors' boxes mapped to catalog categories, catalog-guided
regions when no detector resolves, and the colour of each region."""
