"""Tests in a real browser: headless Chromium (Debian's /usr/bin/chromium) driven by Playwright.

The fixtures are in conftest.py; tests here are synchronous (Playwright's sync API), with the
gateway and a receiver serving from their own event loop in a thread.
"""
