"""visitor-sync importer: validate and fully sync district roster files."""

__version__ = "0.1.0"
