"""The format readers of the loader: delimited text (csv), JSON Lines and
whitespace-delimited text (lines), Parquet (parquet).
"""
