"""The chaos suite: N jobs under worker kills, a frozen moto server and failing S3 PUTs."""
