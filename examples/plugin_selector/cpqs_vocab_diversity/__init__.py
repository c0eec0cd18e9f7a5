"""Example cpqs-bench selector plugin: vocabulary diversity (MATTR) of the response."""
