"""The shopping assistant behind `pinshop chat`, and its grounding checks."""
