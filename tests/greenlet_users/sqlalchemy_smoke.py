"""SQLAlchemy's asyncio layer on weft (run under `python -m weft.alias
greenlet` by tests/test_greenlet_users.py): greenlet_spawn/await_only
directly, then an AsyncSession over aiosqlite."""
import asyncio, greenlet
assert "weft" in greenlet.__file__, greenlet.__file__
from sqlalchemy.util import greenlet_spawn, await_only
from sqlalchemy import Column, Integer, String, select
from sqlalchemy.orm import declarative_base
from sqlalchemy.ext.asyncio import create_async_engine, AsyncSession

async def plain():
    def sync_part(x):
        # runs in a greenlet; await_only switches back to the event loop
        return await_only(asyncio.sleep(0, result=x * 2)) + 1
    assert await greenlet_spawn(sync_part, 20) == 41
    def raises():
        await_only(asyncio.sleep(0))
        raise KeyError("k")
    try:
        await greenlet_spawn(raises)
    except KeyError:
        pass
    else:
        raise AssertionError

Base = declarative_base()
class Item(Base):
    __tablename__ = "items"
    id = Column(Integer, primary_key=True)
    name = Column(String(20))

async def orm():
    engine = create_async_engine("sqlite+aiosqlite:///:memory:")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    async with AsyncSession(engine) as s:
        s.add_all([Item(name=f"n{i}") for i in range(50)])
        await s.commit()
        rows = (await s.execute(select(Item).where(Item.id > 40).order_by(Item.id))).scalars().all()
        assert [r.name for r in rows] == [f"n{i}" for i in range(40, 50)]
    await engine.dispose()

asyncio.run(plain())
asyncio.run(orm())
print("sqlalchemy OK")
