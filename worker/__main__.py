from ws_counter.worker.main import main

if __name__ == "__main__":
    raise SystemExit(main())
