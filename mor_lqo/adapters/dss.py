MULTI = True
DEFAULTS: dict = {}


def find(keys, arch=None):
    return []
